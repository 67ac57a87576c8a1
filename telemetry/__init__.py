"""What the engine tells its operators about itself: metrics, traces and structured logs."""
