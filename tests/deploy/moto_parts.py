"""Template resources that moto's CloudFormation cannot create, created through their own API instead."""

from __future__ import annotations

from typing import Any


def create_secret(client: Any, properties: dict[str, Any]) -> str:
    """An ``AWS::SecretsManager::Secret`` with ``GenerateSecretString``, as CloudFormation makes it; its ARN."""
    generate = properties["GenerateSecretString"]
    options = {
        key: generate[key]
        for key in (
            "PasswordLength",
            "ExcludePunctuation",
            "ExcludeCharacters",
            "ExcludeNumbers",
            "ExcludeUppercase",
            "ExcludeLowercase",
            "IncludeSpace",
            "RequireEachIncludedType",
        )
        if key in generate
    }
    value = client.get_random_password(**options)["RandomPassword"]
    return client.create_secret(Name=properties["Name"], Description=properties.get("Description", ""), SecretString=value)[
        "ARN"
    ]
