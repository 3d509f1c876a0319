"""Sample-quality metrics: FID, KID, precision/recall and IS on a pluggable feature network (a small classifier
trained here, or InceptionV3 with user-supplied pytorch-fid weights); distances for low-dimensional data."""

from .distances import log_likelihood_of_samples, mmd2_unbiased, mmd_gaussian, sliced_wasserstein, wasserstein_1d
from .features import (FeatureNet, FeatureNetConfig, load_feature_net, load_or_train_feature_net, save_feature_net,
                       train_feature_net)
from .fid import fid_from_features, frechet_distance, gaussian_stats
from .inception import InceptionV3, load_inception
from .inception_score import inception_score
from .kid import kid, polynomial_kernel
from .precision_recall import precision_recall

__all__ = ["FeatureNet", "FeatureNetConfig", "InceptionV3", "fid_from_features", "frechet_distance", "gaussian_stats",
           "inception_score", "kid", "load_feature_net", "load_inception", "load_or_train_feature_net",
           "log_likelihood_of_samples", "mmd2_unbiased", "mmd_gaussian", "polynomial_kernel", "precision_recall",
           "save_feature_net", "sliced_wasserstein", "train_feature_net", "wasserstein_1d"]
