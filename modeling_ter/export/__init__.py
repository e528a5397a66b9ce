"""Deployment exports of a TER checkpoint: ONNX graphs and an onnxruntime model behind the usual pipeline."""

from .onnx import ONNXTERModel, export_onnx, onnx_pipeline

__all__ = ["ONNXTERModel", "export_onnx", "onnx_pipeline"]
