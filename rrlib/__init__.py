"""rrlib: the helper package behind the Refusal Robustness Scaling notebooks and book.

The data path runs config -> data -> models -> generate -> judges -> metrics ->
store -> figures -> book; the attack branches off after models (attack) and
feeds generate at each checkpoint. Modules are imported on demand, so
``import rrlib`` is cheap.
"""

__version__ = "0.1.0"
