"""Sample-quality metrics: FID, KID, precision/recall and IS on a pluggable feature network; distances for
low-dimensional data."""

from .distances import log_likelihood_of_samples, mmd2_unbiased, mmd_gaussian, sliced_wasserstein, wasserstein_1d
from .features import FeatureNet, FeatureNetConfig, load_or_train_feature_net, train_feature_net
from .fid import fid_from_features, frechet_distance, gaussian_stats
from .inception_score import inception_score
from .kid import kid, polynomial_kernel
from .precision_recall import precision_recall

__all__ = ["FeatureNet", "FeatureNetConfig", "fid_from_features", "frechet_distance", "gaussian_stats",
           "inception_score", "kid", "load_or_train_feature_net", "log_likelihood_of_samples", "mmd2_unbiased",
           "mmd_gaussian", "polynomial_kernel", "precision_recall", "sliced_wasserstein", "train_feature_net",
           "wasserstein_1d"]
