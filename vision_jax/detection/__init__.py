"""Object detection's building blocks: boxes, anchors, non-maximum suppression (`boxes`, pure JAX,
jittable, static shapes) and pictures of detections (`drawing`, numpy and PIL on the host).

Boxes are `[..., 4]` float arrays of pixel coordinates `x0, y0, x1, y1` (left, top, right,
bottom; x1 > x0 and y1 > y0 for a box with an area), the convention of torchvision.ops. The
dataset-level metrics (VOC and COCO average precision) are host-side numpy and live in
`vision_jax.metrics.detection`.
"""
