# Backup files (libbackup/backup): statements, pack/verify/extract, re-wrap,
# damaged and hostile files, the store and the catalog; the CLI commands.
if(TARGET bk_virtual)
  # The lab for the scripts and the benchmark: PKI, memory folders, statements.
  add_executable(bk-test-lab ${CMAKE_CURRENT_LIST_DIR}/lab.c)
  target_include_directories(bk-test-lab PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(bk-test-lab PRIVATE bk_virtual)

  bk_add_test(backup_files SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_backup.c
    LIBS bk_virtual PkgConfig::SODIUM TIMEOUT 300)
  bk_add_test(backup_long SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_backup_long.c
    LIBS bk_virtual LABELS long TIMEOUT 3600)

  foreach(t backup_cli backup_hostile)
    bk_add_script_test(${t} ${CMAKE_CURRENT_LIST_DIR}/${t}.sh TIMEOUT 300)
    set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT
      "BK_TEST_LAB=$<TARGET_FILE:bk-test-lab>")
  endforeach()
endif()
bk_add_fuzz(statement ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_statement.c)
