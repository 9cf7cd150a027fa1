"""vizlib: the reference library of the course *Seeing Inside ConvNets*."""
__version__ = "0.1.0"
