"""A running node: its configuration (`baton.node.config`) and the supervisor hosting the API
server, workers, scheduler and user agents."""
