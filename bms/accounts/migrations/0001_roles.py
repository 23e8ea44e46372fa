"""The built-in role groups viewer, operator, engineer and administrator with their permissions (bms.accounts.roles)."""

from django.db import migrations

from bms.accounts import roles


def create_roles(apps, schema_editor):
    roles.create_all_permissions(apps, using=schema_editor.connection.alias)
    roles.sync_roles(apps)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=roles.ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("sessions", "0001_initial"),
        ("history", "0001_initial"),
        ("points", "0003_point_options"),
        ("control", "0004_command_binding_and_lifetime"),
        ("events", "0002_history_stamp"),
        ("alarms", "0003_journal_seq_and_permissions"),
        ("redundancy", "0004_take_control_request"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
