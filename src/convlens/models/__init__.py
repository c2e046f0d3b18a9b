"""Model code shared by every capability: network definitions, weight loaders, registry."""
