"""tkvr: textual knowledge for visual recognition.

Fine-tunes a vision-language model's visual encoder for video and image classification while the
classifier is a frozen matrix of text embeddings of the class names (Text4Vis).
Importing the package does nothing beyond defining names; torch is imported by the modules that
need it.
"""

__version__ = "0.1.0"
