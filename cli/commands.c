/* The command table: every aibo-restore command, in the order `help` lists them. */
#include "cli.h"

extern const cli_command cmd_help;
extern const cli_command cmd_version;
extern const cli_command cmd_config_show;
extern const cli_command cmd_keygen;
extern const cli_command cmd_completion;
extern const cli_command cmd_devices;
extern const cli_command cmd_info;
extern const cli_command cmd_unit;
extern const cli_command cmd_ticket;
extern const cli_command cmd_reassign;
extern const cli_command cmd_enroll;
extern const cli_command cmd_cloud_backups;
extern const cli_command cmd_cloud_backup_fetch;
extern const cli_command cmd_cloud_backup_rewrap;
extern const cli_command cmd_pack;
extern const cli_command cmd_inspect;
extern const cli_command cmd_verify;
extern const cli_command cmd_extract;
extern const cli_command cmd_rewrap;
extern const cli_command cmd_backups_list;
extern const cli_command cmd_backups_show;
extern const cli_command cmd_backups_import;
extern const cli_command cmd_backups_rm;
extern const cli_command cmd_backups_gc;
extern const cli_command cmd_backup;
extern const cli_command cmd_restore;
extern const cli_command cmd_firmware_pack;
extern const cli_command cmd_firmware_inspect;
extern const cli_command cmd_firmware_verify;
extern const cli_command cmd_firmware_list;
extern const cli_command cmd_firmware_flash;
extern const cli_command cmd_repair;
extern const cli_command cmd_resume;
extern const cli_command cmd_jobs;
extern const cli_command cmd_job_show;
extern const cli_command cmd_job_abort;
extern const cli_command cmd_job_audit;

const cli_command *const cli_commands[] = {
	&cmd_help,
	&cmd_version,
	&cmd_keygen,
	&cmd_completion,
	&cmd_config_show,
	&cmd_devices,
	&cmd_info,
	&cmd_unit,
	&cmd_ticket,
	&cmd_reassign,
	&cmd_enroll,
	&cmd_cloud_backups,
	&cmd_cloud_backup_fetch,
	&cmd_cloud_backup_rewrap,
	&cmd_pack,
	&cmd_inspect,
	&cmd_verify,
	&cmd_extract,
	&cmd_rewrap,
	&cmd_backups_list,
	&cmd_backups_show,
	&cmd_backups_import,
	&cmd_backups_rm,
	&cmd_backups_gc,
	&cmd_backup,
	&cmd_restore,
	&cmd_firmware_pack,
	&cmd_firmware_inspect,
	&cmd_firmware_verify,
	&cmd_firmware_list,
	&cmd_firmware_flash,
	&cmd_repair,
	&cmd_resume,
	&cmd_jobs,
	&cmd_job_show,
	&cmd_job_abort,
	&cmd_job_audit,
	NULL,
};
