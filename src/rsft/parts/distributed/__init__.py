"""Scale-out on Ray: an ordered, bounded, fault-tolerant map over batches, on actors or on tasks.

`ActorPool` holds N actors, each building its engine once, for sampling;
`task_map` runs a function per batch as Ray tasks, for scoring; `connect`
starts or joins the cluster the config names. Both maps hand results back in
input order, so the driver writes the same files as a run without Ray.

Ray is an optional extra (``pip install 'rsft[ray]'``): nothing here imports it
until a function is called, so ``import rsft`` works without it.
"""

from rsft.parts.distributed.cluster import check_ray, connect
from rsft.parts.distributed.ray_pool import ActorPool, task_map

__all__ = ["ActorPool", "check_ray", "connect", "task_map"]
