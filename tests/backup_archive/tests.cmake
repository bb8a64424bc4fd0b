# The memory archive (libbackup/archive): manifest, digests, writer, reader.
bk_add_test(backup_archive
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_archive.c ${CMAKE_CURRENT_LIST_DIR}/helpers.c
  TIMEOUT 120)
bk_add_test(backup_archive_threads
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_archive_threads.c ${CMAKE_CURRENT_LIST_DIR}/helpers.c
  TIMEOUT 300)
bk_add_test(backup_archive_long
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_archive_long.c ${CMAKE_CURRENT_LIST_DIR}/helpers.c
  LABELS long TIMEOUT 1800)
bk_add_fuzz(manifest ${CMAKE_CURRENT_LIST_DIR}/../fuzz/fuzz_manifest.c)
bk_add_fuzz(archive ${CMAKE_CURRENT_LIST_DIR}/../fuzz/fuzz_archive.c)
