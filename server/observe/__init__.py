"""What a server tells about itself: metrics, logs of changes, lifecycle events for
plugins, statistics and the per-minute rollup behind the dashboard's charts."""
