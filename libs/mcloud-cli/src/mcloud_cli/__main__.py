from mcloud_cli.main import app

app(prog_name="mcloud")
