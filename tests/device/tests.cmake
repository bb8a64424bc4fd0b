# The device channel, the device client and the virtual robot's core.
if(TARGET bk_virtual)
  bk_add_test(device SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_device.c
    ${CMAKE_CURRENT_LIST_DIR}/helpers.c LIBS bk_virtual TIMEOUT 180)
endif()

# The channel handshake fuzz targets; their seeds come from recorded sessions
# (handshake_corpus --write) and must keep completing the handshake.
bk_add_fuzz(handshake_unit ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_handshake_unit.c)
bk_add_fuzz(handshake_terminal ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_handshake_terminal.c)
add_executable(handshake_corpus ${CMAKE_CURRENT_LIST_DIR}/handshake_corpus.c)
target_include_directories(handshake_corpus PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(handshake_corpus PRIVATE bk_testlib)
add_test(NAME device_handshake_corpus
  COMMAND handshake_corpus --check ${CMAKE_SOURCE_DIR}/tests/fuzz/corpora)

# End to end: aibo-vdev and aibo-restore devices/info over TCP, Unix and the
# simulated USB bus. Registered once the commands are in the command table.
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/cli/commands.c)
file(READ ${CMAKE_SOURCE_DIR}/cli/commands.c BK_DEVICE_CLI_TABLE)
string(FIND "${BK_DEVICE_CLI_TABLE}" "&cmd_info" BK_DEVICE_HAS_INFO)
if(TARGET aibo-vdev AND NOT BK_DEVICE_HAS_INFO EQUAL -1)
  bk_add_script_test(device_e2e ${CMAKE_CURRENT_LIST_DIR}/e2e.sh TIMEOUT 180)
endif()
