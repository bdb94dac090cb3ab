"""The SSD network (backbone, extra layers, heads), its default boxes and the detector around it."""
