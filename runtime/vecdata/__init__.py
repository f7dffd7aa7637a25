"""Vector data sets: DiskANN/fvecs file formats, exact k-NN ground truth, synthetic data.

Shared by every vector-search runtime (DiskANN, PipeANN, Quake) and their experiments, so a
data set written by one is read by the others and by DiskANN itself.
"""

from labrig.runtime.vecdata._formats import (
    DataFileError,
    read_bin,
    read_groundtruth,
    read_months,
    read_vecs,
    write_bin,
    write_groundtruth,
    write_vecs,
)
from labrig.runtime.vecdata._kmeans import assign, kmeans, sq_dists
from labrig.runtime.vecdata._dataset import VectorDataset, load_dataset
from labrig.runtime.vecdata._oracle import Metric, brute_force_knn, recall_at_k
from labrig.runtime.vecdata._synthetic import clustered_vectors

__all__ = [
    "DataFileError",
    "Metric",
    "VectorDataset",
    "assign",
    "brute_force_knn",
    "clustered_vectors",
    "kmeans",
    "load_dataset",
    "read_bin",
    "read_groundtruth",
    "read_months",
    "read_vecs",
    "recall_at_k",
    "sq_dists",
    "write_bin",
    "write_groundtruth",
    "write_vecs",
]
