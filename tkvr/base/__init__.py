"""The ground floor: the mechanism every layer uses, and no domain rule. Importing it never imports
torch.

- errors.py: `TkvrError` (a user mistake, exit 2) and `Fault` (the machine or the data, exit 1).
- settings.py: how a setting is declared (`setting`, `borrow`), turned into a click option, read
  from `--config` or a run's config.yaml, type-checked and built into grouped settings. The
  groups themselves live beside the code that reads them: `model/settings.py`,
  `data/settings.py`, `run/settings.py` and each command's module.
- fileio.py: atomic writes, validated readers, the writable probe, one-writer locks.
- progress.py: rank-0 output, progress bars, `--json` publishing, the dry-run plan.
- procs.py: the fork server that reader processes start from.
"""
