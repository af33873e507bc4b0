from tkvr.cli import main

main()
