"""mlrollouts: controlled experiments between ML model versions, decided with sound statistics."""

__version__ = "0.1.0"

GROUP = "mlrollouts.dev"
VERSION = "v1alpha1"
PLURAL = "modelexperiments"
KIND = "ModelExperiment"
