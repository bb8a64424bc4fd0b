# Writes the shell completion scripts by asking the built aibo-restore for
# them, so they always match the program's command table.
#   cmake -DPROGRAM=path/to/aibo-restore -DOUT_DIR=dir -P completion.cmake
# Produces OUT_DIR/aibo-restore (bash) and OUT_DIR/_aibo-restore (zsh).
if(NOT PROGRAM OR NOT OUT_DIR)
  message(FATAL_ERROR "completion.cmake: PROGRAM and OUT_DIR are required")
endif()
file(MAKE_DIRECTORY "${OUT_DIR}")
# A sanitizer build's leak report belongs to the tests, not to the build.
set(ENV{ASAN_OPTIONS} "detect_leaks=0:verify_asan_link_order=0")
foreach(pair "bash;aibo-restore" "zsh;_aibo-restore")
  list(GET pair 0 shell)
  list(GET pair 1 name)
  execute_process(COMMAND "${PROGRAM}" completion ${shell}
    OUTPUT_FILE "${OUT_DIR}/${name}.part"
    ERROR_VARIABLE err
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    file(REMOVE "${OUT_DIR}/${name}.part")
    message(FATAL_ERROR "'${PROGRAM} completion ${shell}' failed (${rc}): ${err}")
  endif()
  file(RENAME "${OUT_DIR}/${name}.part" "${OUT_DIR}/${name}")
endforeach()
