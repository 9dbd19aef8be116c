"""The DGDR logic: API models, phase handlers, status writer, profiling runner, follower."""
