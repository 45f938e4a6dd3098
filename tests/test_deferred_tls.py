"""asyncio without OpenSSL until TLS is needed (kron.service.deferred_tls): TLS still works."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Run in a fresh interpreter: this one imported ssl long ago.
SCRIPT = textwrap.dedent(
    """
    import sys

    from kron.service.deferred_tls import import_asyncio

    import_asyncio()
    import asyncio

    print("ssl at start:", "ssl" in sys.modules)

    import httpx  # what kron's http actions and deliveries use; it imports ssl
    import trustme

    print("ssl after httpx:", "ssl" in sys.modules)


    async def main() -> None:
        ca = trustme.CA()
        server_context = __import__("ssl").create_default_context(
            __import__("ssl").Purpose.CLIENT_AUTH
        )
        ca.issue_cert("127.0.0.1").configure_cert(server_context)

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\\r\\n\\r\\n")
            writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\nconnection: close\\r\\n\\r\\nok")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        with ca.cert_pem.tempfile() as ca_file:
            async with httpx.AsyncClient(verify=ca_file) as client:
                response = await client.get(f"https://127.0.0.1:{port}/")
                print("https:", response.status_code, response.text)
            # A certificate from no trusted authority is still refused.
            async with httpx.AsyncClient() as client:
                try:
                    await client.get(f"https://127.0.0.1:{port}/")
                except httpx.ConnectError as exc:
                    print("untrusted:", "CERTIFICATE_VERIFY_FAILED" in str(exc))
        server.close()
        await server.wait_closed()


    asyncio.run(main())
    """
)


@pytest.mark.timeout(60)
def test_an_https_request_after_asyncio_was_imported_without_ssl() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "ssl at start: False",
        "ssl after httpx: True",
        "https: 200 ok",
        "untrusted: True",
    ]


def test_a_python_whose_asyncio_is_unknown_imports_it_as_it_is() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.version_info = (3, 99, 0, "final", 0)  # not one of the versions checked
        from kron.service.deferred_tls import import_asyncio
        import_asyncio()
        print("ssl" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=50, check=False
    )
    assert (done.returncode, done.stdout) == (0, "True\n"), done.stderr
