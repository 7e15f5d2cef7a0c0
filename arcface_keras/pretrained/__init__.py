"""Published arcface_torch IResNet weights (.pth state dicts, ONNX files) → the project's backbones."""
