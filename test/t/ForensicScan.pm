# Copyright (c) pg_recall authors
#
# ForensicScan.pm
#	  Forensic proof of erasure for the TAP tests: read the files of a
#	  relation (heap main fork segments, its TOAST heap and TOAST index,
#	  every index) byte by byte and count the occurrences of markers, as
#	  they are, case-insensitively (a tsvector lowercases its lexemes) and
#	  by their 10-byte fragments (a marker cut by a page, a chunk or an
#	  index key boundary still leaves fragments).  Files are located with
#	  pg_relation_filepath() after a CHECKPOINT, so that the server's dirty
#	  buffers are on disk when they are read.
#
#	  A scan result is
#	    { files => [ { relation, kind, am, file, size,
#	                   hits => { NAME => { exact, ci, frag, frags } } } ] }
#	  where, for the marker NAME, exact counts its occurrences as given, ci
#	  those in the lowercased file of the lowercased marker, frag how many
#	  of its 10-byte fragments (sliding windows) occur at least once
#	  (case-insensitively) and frags how many fragments were looked for
#	  (windows of fewer than 5 distinct bytes are left out: a run of zero
#	  bytes in a raw slice would match any zeroed page).  scan_database()
#	  reads every file of a database's directory instead, whatever
#	  relation it belongs to.
#
#	  Also here, because every erasure test needs them: random markers,
#	  md5 chains (text that does not compress), the raw stored bytes of a
#	  compressed value (a compressed value's bytes are not its text), the
#	  trigram bytes a pg_trgm GiST leaf key holds, a purge that waits out
#	  other sessions' short-lived snapshots, a wait for the rebuilder, and
#	  recalls that record their residue by hand where the recall itself
#	  did not (recall_with_residue: SQL helpers computing, before the
#	  recall and in its transaction, the {relation, block} pairs of the old
#	  version and of its TOAST chunks, as the trigger records them).

package ForensicScan;

use strict;
use warnings;

use Digest::MD5 qw(md5_hex);
use Exporter 'import';
use File::Find;
use FindBin;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(
  random_marker md5_chain relation_files scan_relations scan_files
  scan_database total_hits any_hits hit_report found_in stored_slices trgm_bytes
  purge_done install_residue_helpers recall_with_residue wait_rebuilt
);

# Length of the fragments looked for.
our $FRAGMENT_LEN = 10;

# A random marker of $len letters, mixed case (so that a lowercasing index
# only matches case-insensitively).  Random: two markers share no fragment.
sub random_marker
{
	my ($len) = @_;
	$len //= 32;
	my @c = ('a' .. 'z', 'A' .. 'Z');
	return join '', map { $c[ int(rand(@c)) ] } 1 .. $len;
}

# The md5 hex digests of $seed.1 .. $seed.$n, one after the other: text
# that compresses poorly.
sub md5_chain
{
	my ($seed, $n) = @_;
	return join '', map { md5_hex("$seed$_") } 1 .. $n;
}

# The files of a table: its main fork segments, its TOAST heap and TOAST
# index, and every index, as a list of
#   { relation, kind (heap, toast, toast index, index), am, file (absolute) }
# one per segment.  On a standby too (pg_relation_filepath is read-only).
sub relation_files
{
	my ($node, $db, $table) = @_;
	my $out = $node->safe_psql(
		$db, qq{
WITH t AS (SELECT '$table'::regclass::oid AS oid),
rels AS (
    SELECT t.oid, 'heap' AS kind, 1 AS ord FROM t
    UNION ALL
    SELECT c.reltoastrelid, 'toast', 2 FROM pg_class c JOIN t ON c.oid = t.oid
    WHERE c.reltoastrelid <> 0
    UNION ALL
    SELECT i.indexrelid, 'toast index', 3 FROM pg_index i
    JOIN pg_class c ON i.indrelid = c.reltoastrelid JOIN t ON c.oid = t.oid
    UNION ALL
    SELECT i.indexrelid, 'index', 4 FROM pg_index i JOIN t ON i.indrelid = t.oid
)
SELECT r.oid::regclass, r.kind, coalesce(a.amname, ''), pg_relation_filepath(r.oid)
FROM rels r JOIN pg_class c ON c.oid = r.oid LEFT JOIN pg_am a ON a.oid = c.relam
ORDER BY r.ord, r.oid::regclass::text});
	my $datadir = $node->data_dir;
	my @files;
	foreach my $line (split /\n/, $out)
	{
		my ($rel, $kind, $am, $path) = split /\|/, $line;
		die "no file path for $rel" unless defined $path && $path ne '';
		my $first = "$datadir/$path";
		push @files,
		  { relation => $rel, kind => $kind, am => $am, file => $first };
		for (my $seg = 1; -e "$first.$seg"; $seg++)
		{
			push @files,
			  {
				relation => $rel,
				kind     => $kind,
				am       => $am,
				file     => "$first.$seg"
			  };
		}
	}
	return @files;
}

# The fragments of a marker (lowercased sliding windows), leaving out
# windows of little variety (a run of zeroes in a raw byte slice would
# match any zeroed page).
sub _fragments
{
	my ($needle) = @_;
	my %seen;
	my @frags;
	for (my $i = 0; $i + $FRAGMENT_LEN <= length $needle; $i++)
	{
		my $f = substr($needle, $i, $FRAGMENT_LEN);
		my %distinct = map { $_ => 1 } split //, $f;
		next if keys %distinct < 5;
		push @frags, $f unless $seen{$f}++;
	}
	return @frags;
}

sub _count
{
	my ($hay, $needle) = @_;
	my ($n, $pos) = (0, 0);
	while (($pos = index($hay, $needle, $pos)) >= 0)
	{
		$n++;
		$pos++;
	}
	return $n;
}

sub _lower
{
	my ($s) = @_;
	$s =~ tr/A-Z/a-z/;
	return $s;
}

# Count the markers (hashref name => bytes) in the given file entries
# (hashrefs with at least a file); a missing file counts as empty.
sub scan_files
{
	my ($markers, @entries) = @_;
	my %prep;
	foreach my $name (keys %$markers)
	{
		my $m  = $markers->{$name};
		my $lc = _lower($m);
		$prep{$name} = { m => $m, lc => $lc, frags => [ _fragments($lc) ] };
	}
	my @result;
	foreach my $e (@entries)
	{
		my $data = '';
		my $exists = 0;
		if (open my $fh, '<:raw', $e->{file})
		{
			local $/;
			$data = <$fh> // '';
			close $fh;
			$exists = 1;
		}
		elsif (-e $e->{file})
		{
			die "cannot open $e->{file}: $!";
		}
		my $lc = _lower($data);
		my %hits;
		foreach my $name (keys %prep)
		{
			my $p = $prep{$name};
			my $frag = 0;
			foreach my $f (@{ $p->{frags} })
			{
				$frag++ if index($lc, $f) >= 0;
			}
			$hits{$name} = {
				exact => _count($data, $p->{m}),
				ci    => _count($lc, $p->{lc}),
				frag  => $frag,
				frags => scalar @{ $p->{frags} }
			};
		}
		push @result,
		  { %$e, exists => $exists, size => length $data, hits => \%hits };
	}
	return { files => \@result };
}

# Scan every file of the given tables (and extra file entries, such as the
# files of an earlier scan, whose relfilenodes a REINDEX may have replaced)
# for the markers.  Options: checkpoint (default 1): CHECKPOINT first
# (on a standby: a restartpoint); extra: arrayref of file entries.
sub scan_relations
{
	my ($node, $db, $tables, $markers, %opts) = @_;
	$node->safe_psql($db, 'CHECKPOINT') if $opts{checkpoint} // 1;
	my @entries = map { relation_files($node, $db, $_) } @$tables;
	my %have = map { $_->{file} => 1 } @entries;
	foreach my $e (@{ $opts{extra} // [] })
	{
		next if $have{ $e->{file} }++;
		push @entries, { %$e, kind => "$e->{kind} (earlier file)" };
	}
	return scan_files($markers, @entries);
}

# Scan every file under the database's directory (base/<oid>), whatever
# relation it belongs to.
sub scan_database
{
	my ($node, $db, $markers, %opts) = @_;
	$node->safe_psql($db, 'CHECKPOINT') if $opts{checkpoint} // 1;
	my $oid = $node->safe_psql($db,
		"SELECT oid FROM pg_database WHERE datname = current_database()");
	my $dir = $node->data_dir . "/base/$oid";
	my @entries;
	find(
		{
			wanted => sub {
				push @entries,
				  {
					relation => "base/$oid/$_",
					kind     => 'file',
					am       => '',
					file     => $File::Find::name
				  }
				  if -f $File::Find::name;
			},
			no_chdir => 0
		},
		$dir);
	return scan_files($markers, @entries);
}

# Sum of one count (exact, ci, frag) of a marker over the files of a scan
# for which $filter (a sub taking the file entry) is true.
sub total_hits
{
	my ($scan, $name, $what, $filter) = @_;
	my $n = 0;
	foreach my $f (@{ $scan->{files} })
	{
		next if $filter && !$filter->($f);
		$n += $f->{hits}{$name}{$what};
	}
	return $n;
}

# All traces of a marker (exact, case-insensitive and fragment counts
# summed) in the files of a scan for which $filter is true (all: undef).
sub any_hits
{
	my ($scan, $name, $filter) = @_;
	return total_hits($scan, $name, 'exact', $filter) +
	  total_hits($scan, $name, 'ci',   $filter) +
	  total_hits($scan, $name, 'frag', $filter);
}

# True when a marker is found (case-insensitively, whole) in a file of the
# scan whose relation or kind matches $re.
sub found_in
{
	my ($scan, $name, $re) = @_;
	return total_hits($scan, $name, 'ci',
		sub { $_[0]{relation} =~ $re || $_[0]{kind} =~ $re }) > 0;
}

# A report of the files where a marker (or any of its fragments) was
# found, for diagnostics: "relation (kind, am) file: exact/ci/fragments".
sub hit_report
{
	my ($scan, $name) = @_;
	my @lines;
	foreach my $f (@{ $scan->{files} })
	{
		my $h = $f->{hits}{$name};
		next unless $h->{exact} || $h->{ci} || $h->{frag};
		push @lines,
		  sprintf(
			"  %s (%s%s) %s [%d bytes]: %d exact, %d case-insensitive, %d/%d fragments",
			$f->{relation}, $f->{kind}, ($f->{am} ? ", $f->{am}" : ''),
			$f->{file}, $f->{size}, $h->{exact}, $h->{ci}, $h->{frag},
			$h->{frags});
	}
	return @lines ? join("\n", "$name found in:", @lines) : "$name: no hit";
}

# The raw bytes a value is stored as, as slices that lie inside one page:
# for an inline value, its attribute bytes in the heap page (pageinspect's
# heap_page_item_attrs, not detoasted); for an external one, each of its
# TOAST chunks (found by the value id in the TOAST pointer).  Each slice is
# up to $len bytes taken from the end of the piece (the end of a compressed
# value holds its least compressible text).  Returns (storage, slices...),
# storage being 'inline' or 'external'.  Needs pageinspect.
sub stored_slices
{
	my ($node, $db, $table, $column, $where, $len) = @_;
	$len //= 64;
	my $row = $node->safe_psql(
		$db, qq{
SELECT (ctid::text::point)[0]::int, (ctid::text::point)[1]::int
FROM $table WHERE $where});
	my ($blk, $off) = split /\|/, $row;
	die "no row of $table where $where" unless defined $off;
	my $attnum = $node->safe_psql($db,
		"SELECT attnum FROM pg_attribute WHERE attrelid = '$table'::regclass AND attname = '$column'"
	);
	my $hex = $node->safe_psql(
		$db, qq{
SELECT encode(t_attrs[$attnum], 'hex')
FROM heap_page_item_attrs(get_raw_page('$table', $blk), '$table'::regclass)
WHERE lp = $off});
	my $raw = pack('H*', $hex);
	my $first = ord(substr($raw, 0, 1));
	my @pieces;
	my $storage;
	if ($first == 0x01)
	{
		# varattrib_1b_e: header, tag, then va_rawsize, va_extinfo,
		# va_valueid, va_toastrelid
		my (undef, undef, undef, undef, $valueid, $toastrelid) =
		  unpack('C C V V V V', $raw);
		$storage = 'external';
		my $toastname = $node->safe_psql($db,
			"SELECT oid::regclass FROM pg_class WHERE oid = $toastrelid");
		my $chunks = $node->safe_psql(
			$db, qq{
SELECT encode(chunk_data, 'hex') FROM $toastname
WHERE chunk_id = $valueid ORDER BY chunk_seq});
		@pieces = map { pack('H*', $_) } split /\n/, $chunks;
	}
	else
	{
		$storage = 'inline';
		@pieces = ($raw);
	}
	my @slices;
	foreach my $p (@pieces)
	{
		next if length($p) < 2 * $len;
		push @slices, substr($p, length($p) - $len - 8, $len);
	}
	return ($storage, @slices);
}

# The bytes of the pg_trgm GiST leaf key of a text: its trigrams, sorted
# and deduplicated as show_trgm() returns them, one after the other (ASCII
# trigrams are stored as their three characters).
sub trgm_bytes
{
	my ($node, $db, $text_sql) = @_;
	my $hex = $node->safe_psql($db,
		"SELECT encode(convert_to(array_to_string(show_trgm($text_sql), ''), 'UTF8'), 'hex')"
	);
	return pack('H*', $hex);
}

# Call recall.purge($table) until it no longer reports the table deferred
# (other sessions' short-lived snapshots, autovacuum's ANALYZE, can hold
# the horizon back for a moment); at most $secs seconds.  Returns the rows
# of the last call as arrayrefs (relation, kind, pages_scanned,
# pages_scrubbed, bytes_zeroed, rebuilt).
sub purge_done
{
	my ($node, $db, $table, $secs) = @_;
	my $deadline = time + ($secs // 30);
	my @rows;
	while (1)
	{
		my $out = $node->safe_psql($db,
			"SELECT relation, kind, pages_scanned, pages_scrubbed, bytes_zeroed, rebuilt"
			  . " FROM recall.purge('$table')");
		@rows = map { [ split /\|/ ] } split /\n/, $out;
		last unless grep { $_->[1] eq 'deferred' } @rows;
		last if time > $deadline;
		usleep(200_000);
	}
	return @rows;
}

# Kept for the tests that call it: the residue is the recall's own now
# (recorded by the guard trigger), nothing to install.
sub install_residue_helpers
{
	return;
}

# Run recall SQL ($sql, recalling the rows of $table whose key is in the
# arrayref $keys) in one transaction.  The recall records what it leaves
# behind itself; the tests prove that record.  Returns the output of $sql.
sub recall_with_residue
{
	my ($node, $db, $table, $keys, $sql) = @_;
	my $out = $node->safe_psql($db, "BEGIN;\n$sql;\nCOMMIT;");
	$out =~ s/\n?$//;
	return $out;
}

# Wait until no content index of a table (or of its copies) is left dirty
# (the rebuilder rebuilt them); at most $secs seconds.  Returns whether it
# happened.
sub wait_rebuilt
{
	my ($node, $db, $table, $secs) = @_;
	my $deadline = time + ($secs // 60);
	while (time < $deadline)
	{
		return 1
		  if $node->safe_psql($db,
			"SELECT count(*) FROM recall.index_state s JOIN pg_class c ON c.oid = s.indexrelid"
			  . " WHERE s.tbl = '$table'::regclass AND s.dirty_since IS NOT NULL") eq '0';
		usleep(200_000);
	}
	return 0;
}

1;
