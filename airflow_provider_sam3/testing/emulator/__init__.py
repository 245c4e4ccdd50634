"""The fal emulator: an HTTPS server the unmodified ``fal_client`` cannot tell from fal's queue.

Modules: ``config`` (knobs), ``tls`` (certificate), ``queue`` (requests and scheduling), ``apps`` (the SAM 3 apps),
``segmenter`` (classical segmentation), ``faults``, ``media_store``, ``server`` (routes), ``runner`` (in-process
server) and ``__main__`` (CLI).
"""
