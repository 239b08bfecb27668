"""The scikit-learn face: GaussianMixture, BayesianGaussianMixture, select_model, model files.
"""
