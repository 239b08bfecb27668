"""Data in and out: user input and stored arrays as row-chunked Dask arrays, output paths, the on-disk
directory format. Imports the model and runtime layers only.
"""
