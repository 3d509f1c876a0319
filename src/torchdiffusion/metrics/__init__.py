"""Sample-quality metrics on a pluggable feature network."""

from .features import FeatureNet, FeatureNetConfig, load_or_train_feature_net, train_feature_net
from .fid import fid_from_features, frechet_distance, gaussian_stats

__all__ = ["FeatureNet", "FeatureNetConfig", "fid_from_features", "frechet_distance", "gaussian_stats",
           "load_or_train_feature_net", "train_feature_net"]
