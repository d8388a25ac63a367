"""Downloading a provider's file with a size cap, without ever holding more than the cap."""
import requests

from app.channels.base import ProviderError, transport_error


def read_capped(url: str, max_bytes: int, timeout: float, what: str) -> bytes:
    """GET `url`; ProviderError(code="file_too_large") as soon as it exceeds `max_bytes`.
    The URL may carry a token: errors name `what`, never the URL."""
    try:
        with requests.get(url, stream=True, timeout=timeout) as response:
            if response.status_code != 200:
                raise ProviderError(f"{what}: HTTP {response.status_code}",
                                    retryable=response.status_code >= 500 or response.status_code == 429)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise ProviderError(f"{what} of {declared} bytes", retryable=False, code="file_too_large")
            chunks, size = [], 0
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise ProviderError(f"{what} above {max_bytes} bytes", retryable=False, code="file_too_large")
                chunks.append(chunk)
            return b"".join(chunks)
    except requests.RequestException as e:
        raise transport_error(what, e) from None
