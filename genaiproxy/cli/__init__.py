"""C{genai-proxy}, the command line around the daemon: quickstart (the proxy
in front of the mock upstream), configure (a client's settings for this
proxy) and the doctor (C{genaiproxy.cli.doctor}).  Nothing imports this
package; its modules are imported when their command runs.
"""

__all__: list[str] = []
