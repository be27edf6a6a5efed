"""What both services share: settings → CLI flags, logging set-up, the request-id rule.

Imports neither inference_service nor http_bridge, and only what the bridge image holds (pydantic, pydantic-settings,
python-json-logger): tests/test_layering.py and tests/deploy check both.
"""
