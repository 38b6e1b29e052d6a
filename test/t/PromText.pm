# Copyright (c) pg_recall authors
#
# PromText.pm
#	  A strict reader of the Prometheus text exposition format, version
#	  0.0.4, for the relay's GET /metrics: every line is a "# HELP name
#	  text", a "# TYPE name type", another comment, or a sample
#	  "name{label="value",...} value [timestamp]"; a metric's HELP and TYPE
#	  come before its samples, at most once each; label values are unescaped
#	  (\\, \", \n); sample values are floats, NaN or +-Inf.  What does not
#	  parse is reported, not skipped, so a test can assert there is none.
#
#	  parse_metrics($text) returns
#	    { metrics => { NAME => { help, type, samples => { LABELS => value } } },
#	      order   => [ NAME, ... ],        # as they first appear
#	      errors  => [ "line N: why", ... ] }
#	  where LABELS is the sample's labels sorted by name, as
#	  'a="x",b="y"' ('' without labels).  sample($parsed, NAME, LABELS)
#	  returns a sample's value (undef when there is none).

package PromText;

use strict;
use warnings;

use Exporter 'import';

our @EXPORT_OK = qw(parse_metrics sample);

my $NAME  = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
my $LABEL = qr/[a-zA-Z_][a-zA-Z0-9_]*/;
my $FLOAT = qr/[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?Inf|NaN/;

# Labels "a="x",b="y"" (optionally with a trailing comma) as a hash; undef
# when they do not parse.
sub parse_labels
{
	my ($text) = @_;
	my %labels;
	pos($text) = 0;
	while (pos($text) < length($text))
	{
		$text =~ /\G($LABEL)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/gc or return undef;
		my ($k, $v) = ($1, $2);
		return undef if exists $labels{$k};
		$v =~ s/\\(["\\n])/$1 eq 'n' ? "\n" : $1/ge;
		$labels{$k} = $v;
	}
	return \%labels;
}

# Canonical spelling of a label set: sorted by name, values escaped again.
sub labels_key
{
	my ($labels) = @_;
	return join ',', map {
		my $v = $labels->{$_};
		$v =~ s/(["\\])/\\$1/g;
		$v =~ s/\n/\\n/g;
		qq{$_="$v"}
	} sort keys %$labels;
}

sub parse_metrics
{
	my ($text) = @_;
	my (%m, @order, @errors);
	my $n = 0;

	push @errors, 'body does not end with a newline'
	  if length($text) && substr($text, -1) ne "\n";
	for my $line (split /\n/, $text)
	{
		$n++;
		next if $line eq '';
		if ($line =~ /^#\s*(HELP|TYPE)\s+($NAME)(?:\s+(.*))?$/)
		{
			my ($what, $name, $rest) = ($1, $2, $3 // '');
			my $key = lc $what;
			push @order, $name unless exists $m{$name};
			if (exists $m{$name}{$key})
			{
				push @errors, "line $n: second $what for $name";
				next;
			}
			if (%{ $m{$name}{samples} // {} })
			{
				push @errors, "line $n: $what for $name after its samples";
			}
			if ($key eq 'type' && $rest !~ /^(counter|gauge|histogram|summary|untyped)$/)
			{
				push @errors, "line $n: unknown type \"$rest\"";
				next;
			}
			$m{$name}{$key} = $rest;
			$m{$name}{samples} //= {};
			next;
		}
		next if $line =~ /^#/;
		if ($line =~ /^($NAME)(?:\{(.*)\})?[ \t]+($FLOAT)(?:[ \t]+(-?[0-9]+))?$/)
		{
			my ($name, $ltext, $value) = ($1, $2 // '', $3);
			my $labels = parse_labels($ltext);
			if (!defined $labels)
			{
				push @errors, "line $n: bad labels \"$ltext\"";
				next;
			}
			my $key = labels_key($labels);
			push @order, $name unless exists $m{$name};
			if (exists $m{$name}{samples}{$key})
			{
				push @errors, "line $n: second sample $name\{$key\}";
				next;
			}
			$m{$name}{samples}{$key} = $value;
			next;
		}
		push @errors, "line $n: not a sample nor a comment: $line";
	}
	return { metrics => \%m, order => \@order, errors => \@errors };
}

sub sample
{
	my ($parsed, $name, $labels) = @_;
	my $m = $parsed->{metrics}{$name} or return undef;
	return $m->{samples}{ $labels // '' };
}

1;
