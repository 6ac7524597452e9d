"""The tuned CPU path for NumPy input (see :mod:`arraymel._numpy.pipeline`)."""
