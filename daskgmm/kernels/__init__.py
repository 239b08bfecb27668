"""The math of one chunk of rows, pure NumPy (numba, CuPy where chosen), no Dask: E-step densities,
M-step sums, the compiled and stacked forms, the reference they are held to, the GPU path, online steps.
Imports the model layer only.
"""
