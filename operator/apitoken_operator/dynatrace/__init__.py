"""Everything that speaks to Dynatrace: the Tokens API v2 models, the async client and its errors."""
