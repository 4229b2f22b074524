/*
 * filename.h -- a name from the data as one file name, one to one, that
 * never leaves its folder.  Shared by the csv and runs plugins.
 */
#ifndef DCBUS_FILENAME_H
#define DCBUS_FILENAME_H

#define NAME_MAX_IN   127                   /* bytes of a name used */
#define NAME_FILE_MAX (3 * NAME_MAX_IN + 1) /* the file name made of one */

/* [A-Za-z0-9._-] as they are (but a leading dot), every other byte as
 * %XX, the empty name as a lone %.  So "a/b" and "a_b" are two files,
 * ".." is "%2E.", and no name leaves its folder.  Only the first
 * NAME_MAX_IN bytes of `name` are used. */
void filename_encode(char out[NAME_FILE_MAX], const char *name);

#endif
