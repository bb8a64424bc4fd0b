/* The command table: every aibo-restore command, in the order `help` lists them. */
#include "cli.h"

extern const cli_command cmd_help;
extern const cli_command cmd_version;
extern const cli_command cmd_config_show;
extern const cli_command cmd_keygen;
extern const cli_command cmd_completion;
extern const cli_command cmd_devices;
extern const cli_command cmd_info;

const cli_command *const cli_commands[] = {
	&cmd_help,
	&cmd_version,
	&cmd_keygen,
	&cmd_completion,
	&cmd_config_show,
	&cmd_devices,
	&cmd_info,
	NULL,
};
