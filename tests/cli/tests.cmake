bk_add_script_test(cli_basics ${CMAKE_CURRENT_LIST_DIR}/cli_basics.sh)
bk_add_script_test(public_headers ${CMAKE_CURRENT_LIST_DIR}/public_headers.sh)
bk_add_script_test(man_pages ${CMAKE_CURRENT_LIST_DIR}/man_pages.sh)
