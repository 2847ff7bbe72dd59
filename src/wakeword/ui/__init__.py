"""The web app: server-rendered pages over a workspace folder. Routes call the library; background work
runs in a separate worker process (``wakeword.ui.worker``), never in the web process."""
