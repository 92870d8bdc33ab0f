"""Who is in the cluster: membership and its ring, discovery, ECS, this task's IP.

``membership`` holds the ring and keeps it in step with discovery and peer
health; ``discovery`` lists members (static seeds, or the ECS service's
tasks); ``ecs`` is the ECS API (management functions and discovery's calls);
``net`` finds this task's private IP.
"""
