"""The relays' bounce and complaint webhooks, each verified the way its provider signs and read
into domain.feedback reports (api.feedback_routes takes them from there)."""
