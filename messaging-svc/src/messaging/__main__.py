"""`python -m messaging [serve|migrate]`."""

from mcloud_common.service_main import main
from messaging.app import MIGRATIONS, build
from messaging.settings import MessagingSettings

if __name__ == "__main__":
    main(settings_cls=MessagingSettings, build=build, migrations=MIGRATIONS)
