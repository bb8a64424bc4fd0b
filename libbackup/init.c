/* Library initialisation and version information. */
#include <stdio.h>

#include <archive.h>
#include <curl/curl.h>
#include <jansson.h>
#include <libusb.h>
#include <sodium.h>
#include <sqlite3.h>

#include <libbackup/libbackup.h>

#include "util/util.h"

int bk_init(void)
{
	if (sodium_init() < 0)
		return bk__error_set(BK_ERROR, NULL, "libsodium failed to initialise");
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return bk__error_set(BK_ERROR, NULL, "libcurl failed to initialise");
	return 0;
}

void bk_shutdown(void)
{
	curl_global_cleanup();
}

const char *bk_version(void)
{
	return BK_VERSION_STRING;
}

const char *bk_version_dependencies(void)
{
	static _Thread_local char line[512];
	{
		const struct libusb_version *u = libusb_get_version();
		curl_version_info_data *c = curl_version_info(CURLVERSION_NOW);
		snprintf(line, sizeof(line),
			 "libsodium %s, %s, libcurl %s, sqlite %s, libusb %u.%u.%u, jansson %s",
			 sodium_version_string(), archive_version_string(), c ? c->version : "?",
			 sqlite3_libversion(), u->major, u->minor, u->micro, jansson_version_str());
	}
	return line;
}
