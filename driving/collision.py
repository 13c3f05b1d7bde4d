"""Open-loop collision geometry of a plan against the labelled future agent boxes.

The geometry itself lives in `automot.collision` (pure torch, below every package), so that model
code (e.g. the refiner's candidate scorer) can label collisions without importing the world.
"""

from automot.collision import box_corners, boxes_overlap, plan_collisions, waypoint_headings

__all__ = ["box_corners", "boxes_overlap", "plan_collisions", "waypoint_headings"]
