"""medspace: turn one hospital's system exports into compliant, tradeable medical data products.

The package has one sub-package per stage of the flow (see ``docs/`` and ``README.md``); import a stage's
public API from ``medspace.<stage>``. Importing ``medspace`` has no side effects.
"""

__version__ = "0.1.0"
