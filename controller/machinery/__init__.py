"""Generic controller machinery: client, informer, store, workqueue, leader election, health server.

Never imports the DGDR logic; it could be lifted out as a library for the next controller."""
