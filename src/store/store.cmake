# Store-only build steps, included from the top CMakeLists.txt right after canopy_component(store).
# Embeds src/store/migrations/*.sql into canopy_store as a generated header of raw string literals,
# so the daemon needs no source tree at run time. A new .sql file re-runs the glob
# (CONFIGURE_DEPENDS).
file(GLOB canopy_store_sql CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/store/migrations/*.sql)
set(canopy_store_gen_dir ${CMAKE_BINARY_DIR}/generated/canopy_store)
set(canopy_store_gen_header ${canopy_store_gen_dir}/store/migrations_sql.gen.h)
add_custom_command(
  OUTPUT ${canopy_store_gen_header}
  COMMAND ${CMAKE_COMMAND} -DSQL_DIR=${PROJECT_SOURCE_DIR}/src/store/migrations
          -DOUT=${canopy_store_gen_header} -P ${PROJECT_SOURCE_DIR}/src/store/embed_migrations.cmake
  DEPENDS ${canopy_store_sql} ${PROJECT_SOURCE_DIR}/src/store/embed_migrations.cmake
  COMMENT "Embedding store migrations"
  VERBATIM)
target_sources(canopy_store PRIVATE ${canopy_store_gen_header})
target_include_directories(canopy_store PRIVATE ${canopy_store_gen_dir})
