# Installation: the installed tree is usable through pkg-config alone, and
# the generated shell completion works.
bk_add_script_test(install_prefix ${CMAKE_CURRENT_LIST_DIR}/install_prefix.sh)
set_property(TEST install_prefix APPEND PROPERTY ENVIRONMENT
  "BK_CC=${CMAKE_C_COMPILER}" "BK_SANITIZE=${BK_SANITIZE}" "BK_USB_VID_PID=${BK_USB_VID_PID}")
bk_add_script_test(completion ${CMAKE_CURRENT_LIST_DIR}/completion.sh)
bk_add_script_test(man_api ${CMAKE_CURRENT_LIST_DIR}/man_api.sh)
