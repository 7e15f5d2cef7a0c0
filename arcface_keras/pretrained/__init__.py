"""Published arcface_torch IResNet and MobileFaceNet weights (.pth state dicts, ONNX files) → the project's backbones."""
