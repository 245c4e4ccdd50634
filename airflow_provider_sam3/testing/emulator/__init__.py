"""The fal emulator: an HTTPS server the unmodified ``fal_client`` cannot tell from fal's queue.

``config`` (knobs and fault rules), ``tls`` (certificate), ``queue`` (requests, states, scheduling), ``server``
(routes), ``faults``, ``media_store``, ``apps`` (one SAM 3 app per registry kind), ``segmenter`` (classical
segmentation), ``fetch`` (input files), ``placeholders`` (stand-in 3D/video files), ``results`` (app answers),
``webhooks``, ``runner`` (in-process ``FalEmulator``) and ``__main__`` (CLI).
"""

__all__ = []
