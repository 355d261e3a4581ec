"""Tests of the shared image kit (image files, pretrained weights, layers, ops, image inputs to
predict.py), the same for every image task."""
