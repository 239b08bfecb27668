"""The model: parameters and sufficient statistics as value types, the M-step, the variational family's
math, checks of user arrays, and the records several layers share. Pure NumPy; imports no other layer.
"""
